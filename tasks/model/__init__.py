"""The model: candidates, training, baselines, evaluation, the model gate, serving check, prediction, report."""
