"""Attacks: one module per attack, all behind `robbench.attack.Attack`.

Installed as `robbench.attacks`. Every module here is imported by `robbench.registry.attacks()`.
"""
