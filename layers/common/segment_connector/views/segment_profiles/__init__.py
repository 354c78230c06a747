"""The Segment-compatible Profile API (`/v1/spaces/<space>/collections/...`): api (one request:
token, space, profile, resource, errors), request (parameters, cursors, pages), resources
(traits, external_ids, metadata, links), events. Imported on the first request of its routes."""
