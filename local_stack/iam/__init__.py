"""What AWS IAM enforces, enforced locally: each function's calls checked against its own role."""
