"""Packaging glue: ship the repository's ``prompts/`` folder inside the package as ``agentdeck.prompts``.

Everything else is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["agentdeck", "agentdeck.*"]) + ["agentdeck.prompts"],
    package_dir={"agentdeck.prompts": "prompts"},
    package_data={"agentdeck": ["*.tcss", "**/*.tcss", "tui/*.tcss"], "agentdeck.prompts": ["*.md", "*.txt"]},
    include_package_data=False,
)
