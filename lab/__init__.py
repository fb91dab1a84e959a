"""The FDFtNet lab: Gradio tabs over the fdftnet package (UI adapters only; the package does the work).

Each tab module has one `render(session, demo)` that builds its components and wires its events;
`state.py` holds checkpoint discovery, the read-only model cache and the handler guard.
"""
