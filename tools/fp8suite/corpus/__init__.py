"""The offline English corpus and Megatron's indexed dataset built from it."""
