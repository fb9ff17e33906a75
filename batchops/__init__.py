"""batchops: declarative, GitOps-style batch inference on Fireworks and OpenAI-compatible APIs.

Manifests declare datasets and batch inference jobs; the reconciler makes the account match them.
See DESIGN.md (shared) and README.md for the architecture and the user guide.
"""

__version__ = "0.1.0"
