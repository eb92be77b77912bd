"""Fine-tuning of the cross-encoder and the bi-encoder on graded judgments."""
