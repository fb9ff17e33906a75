"""What the manifest layer needs to know of the provider kinds, without importing a provider.

``batchops.manifest`` reads these for its JSON Schema and field checks (precisions are a
Fireworks field; a provider that has none rejects it in its own validation hook). Plain
constants: the Fireworks wire module (pydantic models) re-exports them, and ``validate`` reads
them without importing it.
"""

from __future__ import annotations

PRECISIONS = (
    "PRECISION_UNSPECIFIED",
    "FP16",
    "FP8",
    "FP8_MM",
    "FP8_AR",
    "FP8_MM_KV_ATTN",
    "FP8_KV",
    "FP8_MM_V2",
    "FP8_V2",
    "FP8_MM_KV_ATTN_V2",
    "NF4",
    "FP4",
    "BF16",
    "FP4_BLOCKSCALED_MM",
    "FP4_MX_MOE",
)

# ``spec.providers.<name>.kind`` (``ProviderSpec.kind`` in ``batchops.manifest.models``, checked
# equal by a test); the project file's price checks read it without importing the models.
PROVIDER_KINDS = ("fireworks", "openai")
