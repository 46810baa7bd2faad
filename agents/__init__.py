"""Trainers: one module per method, each an `Objective` plugged into the PPO core.

Installed as `robbench.agents`. Every module here is imported by `robbench.registry.trainers()`.
"""
