"""FP8 training experiment suite for Megatron-Core on NVIDIA Hopper GPUs.

The light side (render, report, run queue) needs only PyYAML, Jinja2 and matplotlib and runs on
any machine. The GPU side (the training entry, verify_env on a GPU host) needs the `gpu` extra,
which pulls megatron-core 0.19.x (Python >= 3.12) and Transformer Engine 2.x.
"""

from setuptools import find_packages, setup

setup(
    name="fp8suite",
    version="0.1.0",
    description="Render, run and report FP8-vs-BF16 training experiments with Megatron-Core",
    long_description=__doc__,
    package_dir={"": "tools"},
    packages=find_packages("tools"),
    package_data={"fp8suite": ["data/*.json", "data/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "pyyaml>=6.0,<7",
        "jinja2>=3.1,<4",
        "matplotlib>=3.7,<4",
        "packaging>=21",
        # The report's tests (Welch's t-test with its confidence interval: scipy >= 1.11).
        "scipy>=1.11,<2",
    ],
    extras_require={
        "gpu": [
            "megatron-core>=0.19,<0.20",
            "transformer-engine[pytorch]>=2.3,<3",
            "torch>=2.6",
            "wandb>=0.17",
        ],
        # The corpus builder's converters (tools/fp8suite/corpus/markup.py) and the tokenizer tools.
        "data": ["tokenizers>=0.19", "transformers>=4.40", "beautifulsoup4>=4.11,<5",
                 "docutils==0.19"],  # the version experiments/corpus.provenance.json records
        # tools/check_tracking.py: W&B offline runs and TensorBoard event files against the logs.
        "tracking": ["wandb>=0.17,<0.30", "tensorboard>=2.10"],  # 0.30 dropped the offline-run reader
        # tools/predict_speedup.py: fitting the speedup predictor (non-negative least squares).
        "predict": ["numpy>=1.24", "scipy>=1.10"],
        "test": ["pytest>=7", "pytest-xdist>=3.5", "ruff>=0.6", "tokenizers>=0.19", "beautifulsoup4>=4.11,<5", "docutils>=0.19,<1",
                 "wandb>=0.17,<0.30", "tensorboard>=2.10", "numpy>=1.24", "scipy>=1.10"],
    },
)
