"""No models: this module lets Django send ``post_migrate`` to the app (see ``apps.py``)."""
