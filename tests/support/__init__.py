"""Test support shared by every test folder: data paths and MNIST (:mod:`support.data`), the
amaranth.sim stream driver and monitor (:mod:`support.streams`), random networks
(:mod:`support.networks`). Import these, never ``from conftest import``."""
