module router

go 1.19
