"""The cocotb testbenches, shipped as package data (``bnnhw.sim``).

Nothing in :mod:`bnnhw` imports these modules: :mod:`bnnhw.gen.cocotb_run` locates this folder
and hands it to the simulator, where cocotb imports ``test_network`` (and ``streams``) as
top-level modules.
"""
