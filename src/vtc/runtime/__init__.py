"""The runtime: reads a compiled plan and trains, evaluates and saves (see README.md in this folder).

Import-light on purpose: importing ``vtc.runtime`` loads nothing heavy. ``validate`` and ``sources`` need only pillow
(``datasets`` for Hugging Face sources); ``tiny_models``, ``collator`` and the training modules import torch and
transformers inside their functions.
"""
