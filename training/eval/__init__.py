"""Evaluation of trained checkpoints: `michi-train eval codec` and `michi-train eval model`.

Every score is computed on held-out rows of a corpus (the manifest's valid and test splits, whose
speakers and texts never occur in train) and written as `eval.json` plus a short `EVAL.md`.
A metric whose package cannot be imported here is reported as null together with the reason;
nothing is ever estimated in its place.

- heldout.py: which corpus rows are held out
- asr.py: Whisper transcripts and word error rate on spoken-form text
- quality.py: STOI, wideband PESQ, DNSMOS (optional packages)
- speaker.py: speaker embeddings (resemblyzer) and the voice-cloning win rate
- duplex.py: turn-taking measures of a model run against a recorded dialogue
- codec_eval.py, model_eval.py: the two evaluations
- report.py: eval.json, EVAL.md and loss curves from TensorBoard logs
- commands.py: the command line
"""
