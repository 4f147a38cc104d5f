//! The store conformance suite: contract tests every backend must pass.
