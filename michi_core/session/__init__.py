"""Running the model: the streaming DuplexSession, headless chat and the benchmark."""
