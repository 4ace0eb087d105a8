"""The synthetic audio-visual world the default model is trained on.

Scenes of flat shapes (still images and short videos), spoken questions about
them in many espeak-ng voices with background noise, exact short answers and the
assistant's spoken answers; deterministic from a seed, split into train and
held-out by scene, voice and wording. See `omni data --help` and the README
section "default model".

Modules: world (vocabulary, scenes), render (pixels, PNG/MP4), questions
(families, wordings, answers), voices (espeak-ng + sox), audio (WAV, noise,
mu-law; numpy only), plan (what to generate), build (write a split), evalsets
(av-mcq / spoken-qa files), validate, corpus (tokenizer text), packing (write the
GPU pack), pack (read it; numpy only), codes (answer codec tokens), recognize
(pocketsphinx judge of spoken answers), cli.
"""
