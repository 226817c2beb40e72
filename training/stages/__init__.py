"""Training stages: each says what to build and how one step trains; training/trainer.py runs them."""
