"""rfspec: how a convolutional node's preferred stimulus depends on its receptive field."""

from setuptools import find_packages, setup

setup(
    name="rfspec",
    version="0.1.0",
    description="Receptive-field position and size vs. node specificity in BVLC GoogLeNet (JAX/Flax).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rfspec", "rfspec.*", "experiments", "experiments.*"]),
    package_data={"experiments": ["*.ipynb"]},
    include_package_data=True,
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2",
        "numpy>=1.24",
        "orbax-checkpoint>=0.5",
        "pillow>=9",
        "absl-py>=1.0",
        "ml_collections>=0.1.1",
        "matplotlib>=3.6",
        # jax.export's serialization (26 kB, pure Python): a traced grid program is kept on disk,
        # so a later process skips tracing (rfspec/program_cache.py; compile once per machine).
        "flatbuffers>=23",
        # jax's dtype extension: 0.7.0 registers its ufunc loops in quadratic time, so `import jax`
        # (hence every binary, test process and notebook) pays 1.1 s more than with 0.6.0 (0.1 s),
        # measured with `python -X importtime -c "import ml_dtypes"` on numpy 2.4. jax needs >= 0.5.
        "ml_dtypes>=0.5,<0.7",
    ],
    extras_require={
        # pytest-xdist runs the suite on both cores of a small machine (-n 2: about 8 min instead
        # of 13); nbclient + ipykernel run the Colab notebook in a test.
        "test": ["pytest>=7", "pytest-xdist", "opencv-python-headless<5", "scikit-image", "chex", "nbclient",
                 "ipykernel"],
        # Only for `python -m experiments.benchmark --sections=peer` (Lucent side by side); torch-lucent
        # pins kornia<=0.4.1 and needs torchvision, tqdm and IPython at import time.
        "bench": ["torch", "torchvision", "torch-lucent", "kornia==0.4.1", "decorator", "tqdm", "ipython"],
    },
)
