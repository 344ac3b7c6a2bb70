"""The dataset layouts IADBE reads, in words: appended to every error that says a folder was not understood."""

LAYOUT_HELP = """\
Layouts understood (image files: .png .jpg .jpeg .bmp .tif .tiff .webp):
  mvtec         train/good/*.png, test/<type>/*.png, [ground_truth/<type>/<name>_mask.png]
  mvtec_loco    train/good, validation/good, test/<type>, ground_truth/<type>/<name>.png (or <name>/000.png)
  mvtec3d       {train,validation,test}/<type>/rgb/000.png, test/<type>/gt/000.png
  btech         train/ok, test/ok, test/ko, ground_truth/ko/<name>.png
  visa_csv      split_csv/1cls.csv + <category>/Data/Images/{Normal,Anomaly}, <category>/Data/Masks/Anomaly
  visa_pytorch  visa_pytorch/<category>/{train,test}/{good,bad}, ground_truth/bad
  kolektor      kos01/Part0.jpg + kos01/Part0_label.bmp (all-zero label = normal)
  good_defect   good/*.png, defect/*.png (or bad, anomaly, abnormal, ng, ko; several folders allowed),
                [masks/<name>.png or masks/<name>_mask.png]
  yolo          images/{train,val,test}/*.jpg + labels/{train,val,test}/*.txt (Ultralytics), or
                {train,valid,test}/images + {train,valid,test}/labels (Roboflow), [+ data.yaml: path, train,
                val, test (folders or list files), names]; empty or absent label file = normal image
Example (good_defect):
  my_parts/
    good/000.png 001.png ...
    defect/000.png ...
    masks/000.png ..."""
