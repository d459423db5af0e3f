# FindRevoxNifti.cmake — finds nifti_clib's NIfTI-2 reader (libnifti2 + libznz + zlib).
#
# Debian's own CMake package for nifti_clib (NIFTIConfig.cmake) is broken: it points the znz
# library at the non-multiarch lib directory and hard-fails even with QUIET, its version
# file says 0.0.0.0, and there is no pkg-config file. So the header and libraries are found
# by hand here. Never link libniftiio together with libnifti2: they export identically
# named symbols with different nifti_image layouts.
#
# Result: RevoxNifti_FOUND, RevoxNifti_INCLUDE_DIR, and the imported target
# RevoxNifti::RevoxNifti (nifti2 + znz + ZLIB::ZLIB + libm).
include(FindPackageHandleStandardArgs)

find_package(ZLIB QUIET)
find_path(RevoxNifti_INCLUDE_DIR nifti2_io.h PATH_SUFFIXES nifti)
find_library(RevoxNifti_nifti2_LIBRARY NAMES nifti2)
find_library(RevoxNifti_znz_LIBRARY NAMES znz)
mark_as_advanced(RevoxNifti_INCLUDE_DIR RevoxNifti_nifti2_LIBRARY RevoxNifti_znz_LIBRARY)

find_package_handle_standard_args(RevoxNifti
  REQUIRED_VARS RevoxNifti_INCLUDE_DIR RevoxNifti_nifti2_LIBRARY RevoxNifti_znz_LIBRARY
                ZLIB_FOUND)

if(RevoxNifti_FOUND AND NOT TARGET RevoxNifti::RevoxNifti)
  add_library(RevoxNifti::znz UNKNOWN IMPORTED)
  set_target_properties(RevoxNifti::znz PROPERTIES
    IMPORTED_LOCATION "${RevoxNifti_znz_LIBRARY}"
    INTERFACE_LINK_LIBRARIES ZLIB::ZLIB)
  add_library(RevoxNifti::RevoxNifti UNKNOWN IMPORTED)
  set(_revox_nifti_links RevoxNifti::znz ZLIB::ZLIB)
  if(UNIX)
    list(APPEND _revox_nifti_links m)
  endif()
  set_target_properties(RevoxNifti::RevoxNifti PROPERTIES
    IMPORTED_LOCATION "${RevoxNifti_nifti2_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${RevoxNifti_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${_revox_nifti_links}")
  unset(_revox_nifti_links)
endif()
