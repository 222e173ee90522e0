module myfirstserverlessapp/tools/pause

go 1.26.0
