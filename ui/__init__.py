"""The Gradio chat over an Assistant: `ui.app.serve(assistant)`; imported lazily by `rag chat`."""
