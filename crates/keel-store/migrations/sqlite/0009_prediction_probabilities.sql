-- Multiclass: every class's probability (little-endian f64s in class order) next to the predicted class, so
-- a canary and a shadow are judged on log loss as the gate is.
ALTER TABLE prediction_log ADD COLUMN probabilities BLOB;
ALTER TABLE prediction_log ADD COLUMN shadow_probabilities BLOB;
