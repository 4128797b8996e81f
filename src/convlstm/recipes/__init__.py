"""The packaged recipes, one YAML file per application; read them with
[`convlstm.experiment.load_recipe`][convlstm.experiment.load_recipe] by name (``load_recipe("demo")``) and list them
with [`convlstm.experiment.list_recipes`][convlstm.experiment.list_recipes]."""
