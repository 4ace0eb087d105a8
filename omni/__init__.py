"""omni: an open omni-modal streaming assistant in the LongCat-Flash-Omni design.

Kept import-light on purpose: `encoders`, `speech` and others import
`omni.config` and `omni.nn`, which must not pull in the whole model.
Import `omni.model`, `omni.llm`, ... explicitly.
"""

__version__ = "0.1.0"
