"""Packaging glue, kept for one thing pyproject.toml cannot say: ship the repository's top-level ``prompts/``
folder inside the package as ``agentdeck.prompts``.

Packages are found as namespace packages too, so a new folder under ``agentdeck/`` is shipped even if it
lacks an ``__init__.py`` (tests/test_install.py builds the wheel and checks every file is in it).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["agentdeck", "agentdeck.*"], exclude=["*__pycache__*"])
    + ["agentdeck.prompts"],
    package_dir={"agentdeck.prompts": "prompts"},
    package_data={"": ["*.tcss"], "agentdeck.prompts": ["*.md", "*.txt"]},
    include_package_data=False,
)
