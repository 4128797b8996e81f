"""The ``convlstm`` command: fit, test, predict, evaluate, export, list-models and demo."""
