"""Configs, Lightning modules, losses and checkpoints."""
