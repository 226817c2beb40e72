"""Training data: synthesized and real speech, Whisper word alignment to frames, two-channel
dialogues, text-only samples, one SQLite manifest, and a frame-aligned torch Dataset. Audio files
are read and written through `michi_core.audio`, voice activity comes from `michi_core.vad`.

    textgen, normalize   what to say, and how it is spoken ("2 lbs" -> "two pounds")
    espeak, piper_voice  the synthesizers; voices: speaker ids and a VoiceBank over both
    synth                `data synth`: a corpus of N hours, resumable, in worker processes (parallel)
    corpora, vad         `data ingest`: LibriTTS and audio+txt folders, long files cut at pauses
    align                `data align`: Whisper word times -> known words -> tokens per frame
    dialogues            `data dialogues`: two channels, gaps, overlaps, backchannels, interruptions
    text_only            `data text`: text-only samples
    manifest             the SQLite manifest, splits by speaker and text, statistics
    dataset              torch Datasets of frame-aligned samples, and their collation into batches
    commands             the `michi-train data ...` argument parsers
"""
