"""Code education: exercises graded in the sandbox, progress, hints, syntax fixes and the `codegemma learn` app."""
