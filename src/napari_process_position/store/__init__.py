"""OME-Zarr stores: layout and metadata, the tensorstore opener, output creation, locks."""
