"""Training recipes: plain, whole loops on top of the core, the backbones and the rewards.

* [`rewardkit.recipes.sft`][rewardkit.recipes.sft] — Stage I, supervised flow matching on LoRA
  (``rewardkit sft``);
* [`rewardkit.recipes.grpo`][rewardkit.recipes.grpo] — Stage II, Flow-GRPO with GDPO, DAR and
  DRS (``rewardkit grpo``);
* [`rewardkit.recipes.config`][rewardkit.recipes.config] — their typed configs (the schema);
* [`rewardkit.recipes.config_loading`][rewardkit.recipes.config_loading] — resolving one from
  the defaults, a YAML file, flags and ``--set`` overrides.

Importing this package imports no recipe (and no diffusers); each recipe module is a script to
read top to bottom, not a framework to subclass. Copy one and edit it to change the loop.
"""
