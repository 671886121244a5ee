"""CNN denoisers for complex MRI images and their Lipschitz control."""
