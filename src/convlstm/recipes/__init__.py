"""The packaged recipes, one YAML file per application; read them with :func:`convlstm.experiment.load_recipe`
by name (``load_recipe("demo")``) and list them with :func:`convlstm.experiment.list_recipes`."""
