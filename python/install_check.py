"""CTest python_install: `cmake --install` puts a working xgrad package in the interpreter's site
directory under the prefix. Usage: install_check.py CMAKE BUILD_DIR PREFIX SITE_DIR (relative)."""
import os
import shutil
import subprocess
import sys

cmake, build, prefix, site = sys.argv[1:5]
shutil.rmtree(prefix, ignore_errors=True)
subprocess.run([cmake, "--install", build, "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
where = os.path.join(prefix, site)
code = f"""
import sys; sys.path.insert(0, {where!r})
import numpy as np, xgrad
assert xgrad.__file__.startswith({where!r}), xgrad.__file__
t = xgrad.Tape(); v = t.variable(np.array([1.0, -2.0])); t.backward(xgrad.sum(v * v))
assert (v.grad == [2.0, -4.0]).all()
print("xgrad imported from", xgrad.__file__)
"""
env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the build tree's
subprocess.run([sys.executable, "-c", code], check=True, env=env)
