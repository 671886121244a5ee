"""File formats only: fastMRI HDF5, ISMRMRD, BART cfl, writers (numpy/h5py/ismrmrd; no torch)."""
