"""The front door's parts, one module each; web/front_door.py calls them in order and says why."""
