"""The MichiAI model: config, backbone, tokenizer, streaming layers, codec, listen and flow heads."""
