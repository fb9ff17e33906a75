"""The pure planner: (desired, dataset facts, observed, local results, options) -> Plan. No I/O.

``batchops.reconcile`` calls ``make_plan`` once per pass; ``batchops.apply`` executes the Plan and
``batchops.render`` prints it. The decision table is DESIGN.md section 3. The planner reads the
provider-neutral model (``batchops.providers``), never a provider's wire types.

- ``model``: Kinds, Actions, the Plan, its options and inputs (``Observed``)
- ``views``: declared jobs beside their observed families (``JobView``)
- ``datasets`` / ``jobs`` / ``prune``: the actions of each
- ``make``: ``make_plan`` and the observed fingerprint
"""

from batchops.plan.jobs import permanent_failure
from batchops.plan.make import check_prune, make_plan
from batchops.plan.model import (
    KIND_ORDER,
    LOCAL_CHANGES,
    REMOTE_CHANGES,
    Action,
    DatasetFacts,
    DownloadSpec,
    Kind,
    Observed,
    Plan,
    PlanOptions,
    Resource,
    RowFailures,
    sort_actions,
)
from batchops.plan.views import (
    JobView,
    base_job_id,
    declared_dataset_ids,
    input_id_of,
    job_views,
    wire_parameters,
)
from batchops.providers import DatasetSpec, JobSpec

__all__ = [
    "KIND_ORDER",
    "LOCAL_CHANGES",
    "REMOTE_CHANGES",
    "Action",
    "DatasetFacts",
    "DatasetSpec",
    "DownloadSpec",
    "JobSpec",
    "JobView",
    "Kind",
    "Observed",
    "Plan",
    "PlanOptions",
    "Resource",
    "RowFailures",
    "base_job_id",
    "check_prune",
    "declared_dataset_ids",
    "input_id_of",
    "job_views",
    "make_plan",
    "permanent_failure",
    "sort_actions",
    "wire_parameters",
]
