# FindRevoxStb.cmake — finds the stb single-file headers revox-brats uses for its PNG plots
# and overlays (stb/stb_image_write.h, stb/stb_easy_font.h; Debian: libstb-dev).
#
# Result: RevoxStb_FOUND, RevoxStb_INCLUDE_DIR (the folder holding stb/) and the imported
# target RevoxStb::RevoxStb.
include(FindPackageHandleStandardArgs)

find_path(RevoxStb_INCLUDE_DIR stb/stb_image_write.h)
mark_as_advanced(RevoxStb_INCLUDE_DIR)
if(RevoxStb_INCLUDE_DIR AND NOT EXISTS "${RevoxStb_INCLUDE_DIR}/stb/stb_easy_font.h")
  set(RevoxStb_INCLUDE_DIR "RevoxStb_INCLUDE_DIR-NOTFOUND" CACHE PATH "" FORCE)
endif()

find_package_handle_standard_args(RevoxStb REQUIRED_VARS RevoxStb_INCLUDE_DIR)

if(RevoxStb_FOUND AND NOT TARGET RevoxStb::RevoxStb)
  add_library(RevoxStb::RevoxStb INTERFACE IMPORTED)
  set_target_properties(RevoxStb::RevoxStb PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${RevoxStb_INCLUDE_DIR}")
endif()
