"""rewardkit's backbone adapters: Qwen-Image-Edit-2511 and FLUX.2 [klein].

Registered through the ``rewardkit.backbones`` entry points (``qwen-image-edit-2511``,
``flux2-klein``); use them with ``rewardkit.load_backbone(name, path, **options)``. Importing
an adapter module imports diffusers and transformers, so import them only through the
registry or explicitly.
"""
