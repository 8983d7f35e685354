"""Evaluation: HumanEval, MBPP and HumanEval infilling, scored by running programs in a sandbox."""
