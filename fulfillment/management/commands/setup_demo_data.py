"""Alias of seed_demo_data (the original system's command name)."""

from fulfillment.management.commands.seed_demo_data import Command as SeedCommand


class Command(SeedCommand):
    help = "Alias of seed_demo_data."
