"""The OpenAI-compatible batch provider: OpenAI, Together-style gateways, LiteLLM, vLLM's batch
API, and the embedded local backend's ``/v1/files`` + ``/v1/batches``.

Modules: ``client`` (HTTP), ``lines`` (request lines from neutral rows), ``rules`` (validation
with file:line), ``states`` (wire states to neutral ones), ``ownership`` (metadata, duplicates),
``parts`` (per-batch caps and enqueued-token waves), ``outputs`` (output and error files to
neutral results, what is left after expiry), ``runner`` (one job, end to end).
"""
