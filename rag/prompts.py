"""All text the assistant says on its own or sends to a model, in one place."""

ABSTAIN = "I can't answer that from the indexed documents."
ABSTAIN_DETAIL = "The documents do not appear to say: {reason}"
NO_DOCUMENTS = "No documents are indexed yet. Run `rag ingest PATH` or upload files in the Documents tab."
CORPUS_OVERVIEW = "I have {count} document(s) indexed:"
