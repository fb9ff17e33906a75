"""Pure renderers: plans, diagnostics and status as text, JSON, Markdown and CI annotations."""
