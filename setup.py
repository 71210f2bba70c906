"""The package's files beyond pyproject.toml: the shipped configs, verbose policies and discriminators travel in the
wheel as package data under gan_cot/_shipped/ (gan_cot/shipped.py finds them there, or in a source checkout)."""

from setuptools import find_packages, setup

SHIPPED = ("configs", "models", "discriminators")

setup(
    packages=find_packages(include=["gan_cot", "gan_cot.*", "gan_cot_lab", "gan_cot_lab.*"])
    + [f"gan_cot._shipped.{d}" for d in SHIPPED],
    package_dir={f"gan_cot._shipped.{d}": d for d in SHIPPED},
    package_data={f"gan_cot._shipped.{d}": ["*", "**/*"] for d in SHIPPED},
    exclude_package_data={"": ["__pycache__/*", "*.pyc"]},
)
