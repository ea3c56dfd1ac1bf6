# Installation (cmake --install) and the Debian package (cpack -G DEB): docs/operations.md.
#
# The binary, the systemd unit and the docs go under the prefix (/usr/local by default, /usr in
# the package); the example config and the logrotate file go to /etc, where the unit and
# logrotate look for them, whatever the prefix.
include(GNUInstallDirs)

# cpack and cmake --install package what is built; they never build (a test that packages the
# binary under test must not relink it while other tests run it).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)

install(TARGETS hipache RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# config/hipache.service names /usr/local/bin/hipache and /usr/local/share/doc/hipache: the
# installed copy names the prefix it is installed under (cpack installs again, under /usr).
set(HIPACHE_INSTALLED_UNIT ${CMAKE_CURRENT_BINARY_DIR}/packaging/hipache.service)
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/config/hipache.service\" unit)
  string(REPLACE \"/usr/local/\" \"\${CMAKE_INSTALL_PREFIX}/\" unit \"\${unit}\")
  file(WRITE \"${HIPACHE_INSTALLED_UNIT}\" \"\${unit}\")
")
install(FILES ${HIPACHE_INSTALLED_UNIT} DESTINATION lib/systemd/system)

install(FILES config/config.example.json DESTINATION /etc/hipache)
install(FILES config/hipache.logrotate DESTINATION /etc/logrotate.d RENAME hipache)
install(FILES README.md docs/architecture.md docs/configuration.md docs/migration.md
              docs/operations.md docs/redis-schema.md docs/security.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hipache)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "hipache maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "HTTP and WebSocket reverse proxy routed from Redis, compatible with Hipache")
set(CPACK_PACKAGE_DESCRIPTION
    "A C++ replacement for the Node.js Hipache: same config file, Redis routing table,\n\
dead-backend handling, headers, error pages and access log format.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION httpd)
# Depends: from the libraries the binary links (dpkg-shlibdeps).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "redis-server, logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
