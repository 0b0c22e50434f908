-- RAG collections shared by replicas: each generation is a set of immutable objects under
-- collections/NAME/GENERATION/ in the artifact store; this row is the collection's CURRENT pointer, switched
-- by compare-and-swap so two concurrent writers cannot both win.
CREATE TABLE IF NOT EXISTS collections (
    name       TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
