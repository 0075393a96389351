"""Sub-commands of ``drdrill``: each module has ``add_parser(sub)`` and sets ``run`` as default."""
