"""Docker-free local stack: moto for AWS, the real handlers, a local Segment sink."""
