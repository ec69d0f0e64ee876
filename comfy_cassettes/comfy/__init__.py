"""What ComfyUI *is*, known once: its routes, events, nodes, graph rules, validation and folder rules.

Everything below ``record/`` and ``replay/`` that states a fact about the real server lives here, each fact in
one place, citing the capture or ComfyUI source it comes from. Nothing here knows about cassettes or HTTP
frameworks.
"""
