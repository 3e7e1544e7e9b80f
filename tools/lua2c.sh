#!/bin/sh
# lua2c.sh NAME < file.lua > file.h: the file as a C string constant.
echo "static const char $1[] ="
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/  "/' -e 's/$/\\n"/'
echo ";"
